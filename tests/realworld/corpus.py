"""A real-world corpus built at test time from files shipped in PyPI packages (pydicom's test
files and pydicom-data, read offline from the installed packages), non-image objects, and
damaged copies made with a fixed seed; plus drivers that push inputs through the three
ingest paths (`axiom land`, C-STORE, STOW-RS). Used by tests/realworld and bench/robustness.py.
"""
from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from axiom_dagster.synth import SynthSpec, generate_archive
from tests.realworld.damage import DAMAGES, damaged_copies
from tests.realworld.objects import non_image_objects


def package_files() -> list[Path]:
    """Every DICOM file of pydicom's test files and of pydicom-data, from the installed
    packages (never a download)."""
    folders = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # the pydicom-data package

        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    files = []
    for folder in folders:
        files += sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".dcm", "") and p.stat().st_size > 0)
    return files


@dataclass
class Corpus:
    real: list[Path] = field(default_factory=list)  # package files, as shipped
    built: list[Path] = field(default_factory=list)  # non-image objects and synthetic images
    damaged: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def inputs(self) -> list[Path]:
        return self.real + self.built + [p for p, _ in self.damaged]


def build_corpus(folder: Path, damaged: int, seed: int = 8, synthetic: int = 20) -> Corpus:
    """Copies of the package files, built objects and `damaged` seeded damaged copies
    (of both real-world and synthetic sources) under `folder`."""
    corpus = Corpus()
    real = folder / "real"
    real.mkdir(parents=True, exist_ok=True)
    for src in package_files():
        target = real / f"{src.parent.name}-{src.name}"
        shutil.copyfile(src, target)
        corpus.real.append(target)
    corpus.built = non_image_objects(folder / "objects")
    corpus.built += generate_archive(folder / "synthetic", SynthSpec(2, 1, synthetic // 2, 32, 32, seed=seed))
    rng = random.Random(seed)
    sources = rng.sample(corpus.real, min(40, len(corpus.real))) + corpus.built
    corpus.damaged = damaged_copies(sources, folder / "damaged", damaged, seed=seed)
    return corpus


def split(paths: list, parts: int, seed: int = 3) -> list[list]:
    """`paths` shuffled (seeded) into `parts` lists of about equal size."""
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    return [shuffled[i::parts] for i in range(parts)]


# ---- ingest drivers ------------------------------------------------------------------------

def send_cstore(port: int, paths: list[Path], ae_title: str = "AXIOM") -> dict[Path, tuple[int, str]]:
    """Send each file's encoded data set as it is (pynetdicom, no re-encoding). Returns
    {path: (status, error comment)}; files pynetdicom cannot even split (no File Meta
    Information) are not sent and not in the result."""
    from pynetdicom import AE
    from pynetdicom import _config as pynetdicom_config
    from pynetdicom.dsutils import split_dataset

    from realtime.sopclasses import storage_sop_classes

    storage_sop_classes()  # retired classes known to the sending side too
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    sendable: dict[tuple[str, str], list[Path]] = {}
    for path in paths:
        try:
            meta, _ = split_dataset(path)
            key = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        except Exception:
            continue
        if all(key) and all(k.replace(".", "").isdigit() for k in key):
            sendable.setdefault(key, []).append(path)
    results: dict[Path, tuple[int, str]] = {}
    keys = sorted(sendable)
    for i in range(0, len(keys), 100):  # at most 128 presentation contexts per association
        ae = AE(ae_title="CORPUS")
        for sop_class, syntax in keys[i:i + 100]:
            ae.add_requested_context(sop_class, syntax)
        assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
        assert assoc.is_established, "association refused"
        try:
            for key in keys[i:i + 100]:
                for path in sendable[key]:
                    try:
                        rsp = assoc.send_c_store(path)
                    except Exception:
                        continue  # no accepted context (e.g. an odd syntax): not sent
                    status = int(rsp.get("Status", -1)) if rsp is not None else -1
                    results[path] = (status, str(rsp.get("ErrorComment", "")) if rsp is not None else "")
                    if not assoc.is_established:
                        assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
        finally:
            if assoc.is_established:
                assoc.release()
    return results


def send_stow(base_url: str, api_key: str, paths: list[Path], per_request: int = 25) -> list[dict]:
    """STOW-RS raw multipart requests of up to `per_request` parts each; returns, per part,
    {"path", "stored" (bool), "code", "comment"} in order, plus the HTTP statuses seen."""
    import httpx

    out = []
    with httpx.Client(timeout=120) as client:
        for i in range(0, len(paths), per_request):
            chunk = paths[i:i + per_request]
            boundary = "corpus-boundary-7f3a"
            body = b"".join(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p.read_bytes() + b"\r\n"
                for p in chunk
            ) + f"--{boundary}--\r\n".encode()
            r = client.post(f"{base_url}/api/v1/dicomweb/studies", content=body, headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Authorization": f"Bearer {api_key}"})
            assert r.status_code in (200, 202, 409), (r.status_code, r.text[:300])
            doc = r.json()
            stored = len(doc.get("00081199", {}).get("Value", []))
            failed = doc.get("00081198", {}).get("Value", [])
            assert stored + len(failed) == len(chunk), (stored, len(failed), len(chunk))
            out.append({"http": r.status_code, "stored": stored, "failed": failed, "text": r.text})
    return out


__all__ = ["Corpus", "DAMAGES", "build_corpus", "package_files", "send_cstore", "send_stow", "split"]
