"""Media at ingest: safe paths inside a dataset root, embedded image bytes, video -> 8 frames.

    (library module; used by `unireward ingest` through unireward.data.formats)

Every media reference a reader meets goes through `MediaWriter`, which puts the file into the
output dataset and returns its relative path there, or raises `MediaError` whose message is the
quarantine reason ("<category>: <detail>", the categories `validate` uses for the same faults):

- a path (str) is resolved inside the source root only: absolute paths, `..` and symlinks that
  leave the root are refused (`unsafe_path_reason`); the file is hardlinked or copied to the same
  relative path in the output;
- a Hugging Face `Image` value (`{"bytes": ..., "path": ...}`) with bytes is written once under
  `media/_blobs/<sha256>.<ext>` (its content names it, so duplicates collapse);
- a video file is decoded with PyAV into `frames` uniformly sampled frames (first and last
  included), written as PNG under `media/_frames/<sha256 of the video>/`, in temporal order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VIDEO_FRAMES = 8  # the judge contract: 8 uniformly sampled frames per video
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v"})
MAX_VIDEO_FRAMES = 100_000  # demuxing stops here: a bigger "video" is refused, not decoded
_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"RIFF", ".webp"))


def resolve_media(root: Path, rel: str) -> Path:
    """`root/rel`, refusing absolute paths, `..` and symlinks that leave `root`."""
    if Path(rel).is_absolute():
        raise ValueError(f"media path {rel!r} is absolute; paths must be relative to the dataset")
    root = root.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"media path {rel!r} escapes the dataset root {root}")
    return path


class MediaError(ValueError):
    """A media reference that cannot be used; the message is the quarantine reason."""


def resolve_inside(root: Path, rel: str) -> tuple[Path | None, str | None]:
    """(`root/rel` resolved, None) when it stays inside `root`, else (None, why not).

    One `resolve_media` call (a realpath: a syscall per path component, the main cost of
    ingesting many small files) per path.
    """
    if "\x00" in rel:
        return None, f"media path invalid: {rel!r} contains a NUL character"
    try:
        return resolve_media(root, rel), None
    except ValueError:
        if Path(rel).is_absolute():
            return None, f"media path absolute: {rel!r}; paths must be relative to the dataset root"
        if os.path.normpath(rel).split(os.sep)[0] == "..":
            return None, f"media path escapes root: {rel!r} climbs out of the dataset with '..'"
        return None, f"media symlink out of root: {rel!r} resolves outside the dataset"


def unsafe_path_reason(root: Path, rel: str) -> str | None:
    """Why `rel` may not be used as a path inside `root`, or None when it resolves inside."""
    return resolve_inside(root, rel)[1]


def uniform_indices(n_total: int, n: int = VIDEO_FRAMES) -> list[int]:
    """`n` frame indices spread evenly over `n_total` frames, first and last included.

    >>> uniform_indices(20, 8)
    [0, 3, 5, 8, 11, 14, 16, 19]

    A clip shorter than `n` repeats frames (indices stay in order), so every video is `n` frames.
    """
    if n_total < 1:
        raise ValueError("a video needs at least one frame")
    if n == 1:
        return [0]
    return [round(i * (n_total - 1) / (n - 1)) for i in range(n)]


def sample_frames(path: Path, n: int = VIDEO_FRAMES) -> list[Any]:
    """`n` uniformly sampled frames of the video at `path` as PIL images, in temporal order.

    Two passes: demux to count the frames (no decoding), then decode and keep the sampled ones.
    Raises MediaError for a file PyAV cannot read or a video with no frames.
    """
    import av  # PyAV: imported here so the data plane imports without it until video appears

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"video empty: {path.name!r} has no video stream (0 frames)")
            total = 0
            for packet in container.demux(video=0):
                total += packet.size > 0  # the flush packet at the end has size 0
                if total > MAX_VIDEO_FRAMES:
                    raise MediaError(f"video too long: {path.name!r} > {MAX_VIDEO_FRAMES} frames")
        if total == 0:
            raise MediaError(f"video empty: {path.name!r} has 0 frames")
        wanted = uniform_indices(total, n)
        keep: dict[int, Any] = {}
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    keep[i] = frame.to_image()
                if i >= wanted[-1]:
                    break
    except MediaError:
        raise
    except Exception as err:  # PyAV raises av.error.* (InvalidDataError, ...) and OSError
        raise MediaError(f"video undecodable: {path.name!r} ({type(err).__name__}: {err})") from err
    if not keep:
        raise MediaError(f"video empty: {path.name!r} decoded to 0 frames")
    last = max(keep)  # fewer decodable frames than packets: fall back to the last one decoded
    return [keep.get(i, keep[last]) for i in wanted]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class MediaWriter:
    """Puts media into `out` (the output dataset) from `root` (the source); see module doc."""

    root: Path
    out: Path
    frames: int = VIDEO_FRAMES
    _done: dict[str, str] = field(default_factory=dict)  # source ref -> output rel
    _videos: dict[str, list[str]] = field(default_factory=dict)  # source rel -> frame rels

    def source_path(self, rel: Any) -> tuple[str, Path]:
        """(normalised rel, absolute path) of a file inside the source root, else MediaError."""
        if not isinstance(rel, str) or not rel:
            raise MediaError(f"media reference invalid: {rel!r:.80} is not a path")
        path, why = resolve_inside(self.root, rel)
        if path is None:
            raise MediaError(str(why))
        if not path.exists():
            raise MediaError(f"media missing: {rel!r} not found under the dataset root")
        if not path.is_file():
            raise MediaError(f"media not a file: {rel!r}")
        return os.path.normpath(rel), path

    def image(self, value: Any) -> str:
        """Output-relative path of one image given as a path or a HF Image value."""
        if isinstance(value, dict):
            data = value.get("bytes")
            if isinstance(data, bytes | bytearray) and data:
                return self._blob(bytes(data))
            if data is not None and not isinstance(data, bytes | bytearray):
                raise MediaError(f"media bytes invalid: {type(data).__name__}, expected bytes")
            value = value.get("path")
        if isinstance(value, str) and value in self._done:  # seen: already checked and copied
            return self._done[value]
        rel, path = self.source_path(value)
        if not (self.out / rel).exists():  # "a/./x.png" and "a/x.png" are one file
            from unireward.data.ingest import link_or_copy  # ingest imports this module

            link_or_copy(path, self.out / rel)
        self._done[value] = rel
        return rel

    def _blob(self, data: bytes) -> str:
        ext = next((e for magic, e in _MAGIC if data.startswith(magic)), ".img")
        rel = f"media/_blobs/{_sha256(data)}{ext}"
        dest = self.out / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        return rel

    def video(self, value: Any) -> list[str]:
        """Frame paths of one video: a video file, or a list of frame images kept in order."""
        if isinstance(value, list):
            if not value:
                raise MediaError("video empty: a frame list with 0 frames")
            return [self.image(v) for v in value]
        rel, path = self.source_path(value)
        if rel not in self._videos:
            if path.stat().st_size == 0:
                raise MediaError(f"video empty: {rel!r} has zero bytes")
            digest = file_sha256(path)
            folder = self.out / "media" / "_frames" / digest
            if not folder.exists():
                images = sample_frames(path, self.frames)
                folder.mkdir(parents=True)
                for i, img in enumerate(images):
                    img.convert("RGB").save(folder / f"{i:02d}.png")
            self._videos[rel] = [f"media/_frames/{digest}/{i:02d}.png" for i in range(self.frames)]
        return list(self._videos[rel])

    def visual(self, value: Any) -> list[str]:
        """One visual item: a video file -> frames, a list -> frames, else one image."""
        if isinstance(value, list):
            return self.video(value)
        if isinstance(value, str) and Path(value).suffix.lower() in VIDEO_SUFFIXES:
            return self.video(value)
        return [self.image(value)]
