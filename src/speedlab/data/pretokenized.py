"""Official token shards, used as they are: parameter-golf's sp1024 set, modded-nanogpt's gpt2 set.

Both are already in speedlab's shard format, so fetching them stands in for the data, tokenizer
and shard stages: out_dir gets the shards under their official names, the manifests
fineweb_{train,val}.json, the vocabulary file and token_bytes.npy, as the tokenizer stage writes
them for shards of its own. sp1024's vocabulary is the SentencePiece model in its dataset repo;
gpt2's is GPT-2's byte-level vocab.json from the model repo openai-community/gpt2 (the ids
tiktoken's "gpt2" encoding uses), so both report bits per byte.

Downloads go through hf_hub_download, so they resume after a crash and stay in the HF cache; a
rerun only asks the hub whether each file changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import numpy as np
import sentencepiece as spm
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from speedlab.data.hub import HubUnreachable, hub_endpoint
from speedlab.data.shards import read_shard, write_manifest
from speedlab.data.token_bytes import byte_level_table, token_byte_table
from speedlab.files import atomic_path

log = logging.getLogger("speedlab.data.pretokenized")
NO_FALLBACK = (
    "Official shards have no offline fallback: run with network access, or read documents "
    "instead (data.source hf or local; a catalogue study at --config scale=smoke reads the "
    "quickstart's, with its offline fallback)"
)


@dataclass(frozen=True)
class Preset:
    repo: str  # dataset repo on the hub
    folder: str  # repo folder holding fineweb_{train,val}_NNNNNN.bin ("" = the repo root)
    bos_id: int  # the token before every document
    vocab_size: int
    tokenizer: str  # the vocabulary (bits per byte need it): a SentencePiece .model or a vocab.json
    tokenizer_repo: str | None = None  # model repo holding it; None: the dataset repo itself
    specials: tuple[str, ...] = ()  # byte-level vocab: tokens that stand for no text

    @property
    def name(self) -> str:
        """The vocabulary file's name next to the shards."""
        return Path(self.tokenizer).name


PRESETS = {
    # parameter-golf's export is rooted at the repo folder "datasets/", holding its own
    # datasets/<variant>/ and tokenizers/ (data/cached_challenge_fineweb.py in that repo).
    "sp1024": Preset(
        repo="willdepueoai/parameter-golf",
        folder="datasets/datasets/fineweb10B_sp1024",
        bos_id=1,
        vocab_size=1024,
        tokenizer="datasets/tokenizers/fineweb_1024_bpe.model",
    ),
    # modded-nanogpt's set: val 000000, train from 000001; GPT-2 BPE, <|endoftext|> before docs.
    "gpt2": Preset(
        repo="kjj0/fineweb10B-gpt2",
        folder="",
        bos_id=50256,
        vocab_size=50257,
        tokenizer="vocab.json",
        tokenizer_repo="openai-community/gpt2",
        specials=("<|endoftext|>",),
    ),
}


def byte_table(preset: str, tokenizer: Path) -> np.ndarray:
    """The (3, V) bytes-per-token table of a preset (data.token_bytes), for bits per byte."""
    spec = PRESETS[preset]
    if Path(spec.tokenizer).suffix == ".json":
        try:
            vocab = json.loads(Path(tokenizer).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{tokenizer}: not a JSON vocabulary ({err})") from err
        if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
            raise ValueError(f"{tokenizer}: expected a JSON object {{token: id}}")
        return byte_level_table(vocab, spec.specials, source=str(tokenizer))
    return token_byte_table(spm.SentencePieceProcessor(model_file=str(tokenizer)))


def _split_files(files: list[str], folder: str, split: str) -> list[str]:
    prefix = f"{folder}/" if folder else ""
    pattern = re.compile(re.escape(prefix) + rf"fineweb_{split}_\d{{6}}\.bin")
    return sorted(f for f in files if pattern.fullmatch(f))


def _place(src: str | Path, dest: Path) -> None:
    """Put a file from the HF cache at `dest`, complete or not at all.

    A hard link costs no space and survives a cleaned HF cache; across file systems, a copy.
    """
    src = Path(src).resolve()  # the blob: the snapshot entry is a relative symlink
    with atomic_path(dest) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _check_shard(path: str | Path, name: str, preset: Preset) -> int:
    """Tokens in a downloaded shard, after checking its header, its length and its token ids."""
    try:
        tokens = read_shard(path)
    except ValueError as err:
        raise ValueError(f"{preset.repo}: {name} is not a valid token shard ({err})") from err
    # Reading every token once (a second per 100M) catches a shard of another vocabulary.
    if tokens.size and int(tokens.max()) >= preset.vocab_size:
        raise ValueError(
            f"{preset.repo}: {name} holds token id {int(tokens.max())}, "
            f"outside the preset's vocabulary of {preset.vocab_size}"
        )
    return int(tokens.size)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)  # to a file object: np.save would append ".npy" to a name


def _download(repo: str, path: str, sha: str, endpoint: str, repo_type: str = "dataset") -> str:
    try:
        return hf_hub_download(repo, path, repo_type=repo_type, revision=sha, endpoint=endpoint)
    except RemoteEntryNotFoundError as err:
        raise FileNotFoundError(f"{repo_type} {repo!r}@{sha}: {path} not found ({err})") from err
    except LocalEntryNotFoundError as err:  # the hub stopped answering, and no cached copy
        raise HubUnreachable(f"cannot fetch {path} of {repo} from {endpoint}: {err}") from err


@contextmanager
def _hub_errors(repo: str, what: str, revision: str, endpoint: str) -> Iterator[None]:
    """The hub's errors as the ones a user can act on, naming the repo (`what` says which)."""
    try:
        yield
    except RepositoryNotFoundError as err:
        raise FileNotFoundError(f"{what} {repo!r} not found on {endpoint}: {err}") from err
    except RevisionNotFoundError as err:
        raise FileNotFoundError(f"{what} {repo!r} has no revision {revision!r}") from err
    except (httpx2.ConnectError, httpx2.TimeoutException) as err:
        raise HubUnreachable(
            f"cannot reach the Hugging Face hub at {endpoint} ({err}) to fetch {repo}"
        ) from err


def _fetch_tokenizer(spec: Preset, preset: str, sha: str, endpoint: str, out_dir: Path) -> str:
    """Place the preset's vocabulary file in out_dir; returns where it came from (repo@commit):
    the dataset repo at the shards' commit, or its model repo at the commit `main` points to."""
    repo = spec.tokenizer_repo or spec.repo
    what = "tokenizer repo" if spec.tokenizer_repo else "dataset repo"
    with _hub_errors(repo, f"{what} (preset {preset!r})", "main", endpoint):
        if spec.tokenizer_repo is None:
            rev, repo_type = sha, "dataset"
        else:
            rev = HfApi(endpoint=endpoint).model_info(repo, revision="main").sha or "main"
            repo_type = "model"
        cached = _download(repo, spec.tokenizer, rev, endpoint, repo_type=repo_type)
    _place(cached, out_dir / spec.name)
    return f"{repo}@{rev}"


def _select(spec: Preset, sha: str, files: list[str], train_shards: int) -> dict[str, list[str]]:
    """Repo paths of all val shards and of the first `train_shards` train shards."""
    where = f"{spec.folder}/" if spec.folder else "the repo root"
    val = _split_files(files, spec.folder, "val")
    train = _split_files(files, spec.folder, "train")
    if not val:
        raise ValueError(f"dataset {spec.repo!r}@{sha} has no fineweb_val_*.bin in {where}")
    if train_shards > len(train):
        raise ValueError(
            f"dataset {spec.repo!r}@{sha} has {len(train)} train shards "
            f"(fineweb_train_*.bin in {where}); asked for {train_shards}"
        )
    return {"val": val, "train": train[:train_shards]}


def _fetch_shards(
    spec: Preset, preset: str, train_shards: int, revision: str, endpoint: str, out_dir: Path
) -> tuple[str, dict[str, list[str]], dict[str, list[int]]]:
    """Place the val shards and the first train shards in out_dir: (commit, paths, tokens)."""
    with _hub_errors(spec.repo, f"dataset repo (preset {preset!r})", revision, endpoint):
        api = HfApi(endpoint=endpoint)
        # Pin the commit once, so every file comes from the same one even if `main` moves.
        sha = api.dataset_info(spec.repo, revision=revision).sha or revision
        files = api.list_repo_files(spec.repo, revision=sha, repo_type="dataset")
        splits = _select(spec, sha, files, train_shards)
        out_dir.mkdir(parents=True, exist_ok=True)
        counts: dict[str, list[int]] = {}
        for split, paths in splits.items():
            counts[split] = []
            for path in paths:
                log.info("%s: %s", spec.repo, path)
                cached = _download(spec.repo, path, sha, endpoint)
                # Checked in the HF cache, so a bad shard never appears under its final name.
                counts[split].append(_check_shard(cached, path, spec))
                _place(cached, out_dir / Path(path).name)
    return sha, splits, counts


def _write_token_bytes(spec: Preset, preset: str, tokenizer_source: str, out_dir: Path) -> Path:
    table = byte_table(preset, out_dir / spec.name)
    if table.shape[1] != spec.vocab_size:
        raise ValueError(
            f"{tokenizer_source}: {spec.tokenizer} has {table.shape[1]} tokens, "
            f"the preset expects {spec.vocab_size}"
        )
    token_bytes = out_dir / "token_bytes.npy"
    _save_npy(token_bytes, table)
    return token_bytes


def _write_manifests(out_dir: Path, names: dict, counts: dict, **extra) -> None:
    for split in names:
        for stale in out_dir.glob(f"fineweb_{split}_*.bin"):
            if stale.name not in names[split]:  # left by an earlier fetch of more shards
                stale.unlink()
        write_manifest(
            out_dir / f"fineweb_{split}.json",
            [Path(n) for n in names[split]],
            counts[split],
            **extra,
        )


def fetch_pretokenized(
    preset: str, train_shards: int, out_dir: Path, revision: str = "main"
) -> dict:
    """Download all val shards and the first `train_shards` train shards of a preset into out_dir.

    Returns what was written: the repo, the commit it came from, shard names and token counts
    per split, and the tokenizer and token_bytes.npy paths (None where the preset has none).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    if train_shards < 0:
        raise ValueError(f"train_shards must be >= 0, got {train_shards}")
    spec, endpoint, out_dir = PRESETS[preset], hub_endpoint(), Path(out_dir)
    sha, splits, counts = _fetch_shards(spec, preset, train_shards, revision, endpoint, out_dir)
    tokenizer_source = _fetch_tokenizer(spec, preset, sha, endpoint, out_dir)
    token_bytes = _write_token_bytes(spec, preset, tokenizer_source, out_dir)
    model = out_dir / spec.name
    names = {split: [Path(p).name for p in paths] for split, paths in splits.items()}
    _write_manifests(
        out_dir, names, counts, source=spec.repo, preset=preset, revision=sha,
        tokenizer=model.name, tokenizer_source=tokenizer_source, bos_id=spec.bos_id,
        vocab_size=spec.vocab_size,
    )  # fmt: skip
    return {
        "preset": preset,
        "repo": spec.repo,
        "revision": sha,
        **names,
        **{f"{split}_tokens": sum(c) for split, c in counts.items()},
        "tokenizer": str(model),
        "tokenizer_source": tokenizer_source,
        "token_bytes": str(token_bytes),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    # No defaults here: the workflow passes data.pretokenized's (the schema holds them).
    p.add_argument("--train-shards", type=int, required=True, help="the first N train shards")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--revision", required=True, help="branch, tag or commit of the dataset repo")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        result = fetch_pretokenized(args.preset, args.train_shards, args.out_dir, args.revision)
    except HubUnreachable as err:
        raise SystemExit(f"fetch_pretokenized: {err}. {NO_FALLBACK}") from None
    except (OSError, ValueError) as err:  # a missing repo, revision or file; a bad shard
        raise SystemExit(f"fetch_pretokenized: {err}") from None
    log.info("wrote %s: %s", args.out_dir, json.dumps(result))


if __name__ == "__main__":
    main()
