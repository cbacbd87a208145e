"""Non-image objects built with pydicom for the SOP classes pydicom's test files lack:
Key Object Selection, Grayscale Softcopy Presentation State, Encapsulated PDF, and an image
whose pixels were stripped. Real SOP classes, minimal modules."""
from __future__ import annotations

from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

KOS = "1.2.840.10008.5.1.4.1.1.88.59"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"

# pydicom's own files of classes without Pixel Data, and a YBR_FULL_422 native image.
PYDICOM_NON_IMAGES = ["test-SR.dcm", "waveform_ecg.dcm", "rtplan.dcm", "reportsi.dcm"]
PYDICOM_IMAGES = ["rtdose.dcm", "SC_ybr_full_422_uncompressed.dcm", "CT_small.dcm", "MR_small_RLE.dcm"]


def _base(sop_class: str, modality: str, seed: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[seed, "sop"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
    ds.Modality = modality
    ds.PatientID = "RW-" + seed
    ds.PatientName = "Realworld^" + seed
    ds.StudyDate = "20240105"
    ds.SeriesNumber = "1"
    ds.InstanceNumber = "1"
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def key_object_selection(path: Path) -> Path:
    ds = _base(KOS, "KO", "kos")
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = generate_uid(entropy_srcs=["kos", "ref"])
    ds.CurrentRequestedProcedureEvidenceSequence = [Dataset()]
    ds.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID = ds.StudyInstanceUID
    ds.ContentSequence = [Dataset()]
    ds.ContentSequence[0].ValueType = "IMAGE"
    ds.ContentSequence[0].ReferencedSOPSequence = [item]
    return _save(ds, path)


def presentation_state(path: Path) -> Path:
    ds = _base(GSPS, "PR", "gsps")
    ds.PresentationLUTShape = "IDENTITY"
    ds.ContentLabel = "GSPS"
    return _save(ds, path)


def encapsulated_pdf(path: Path) -> Path:
    ds = _base(ENCAPSULATED_PDF, "DOC", "pdf")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
    return _save(ds, path)


def pixel_stripped(path: Path) -> Path:
    ds = dcmread(get_testdata_file("CT_small.dcm", download=False))
    del ds.PixelData
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["stripped", "sop"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def non_image_objects(folder: Path) -> list[Path]:
    """pydicom's non-image files plus the built ones, copied into `folder`."""
    out = [Path(get_testdata_file(n, download=False)) for n in PYDICOM_NON_IMAGES]
    copies = []
    for src in out:
        target = folder / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
        copies.append(target)
    return copies + [
        key_object_selection(folder / "kos.dcm"), presentation_state(folder / "gsps.dcm"),
        encapsulated_pdf(folder / "pdf.dcm"), pixel_stripped(folder / "stripped.dcm"),
    ]
