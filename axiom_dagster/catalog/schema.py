"""The catalog's columns: one list that the extractor, the writers, the views and
docs/catalog.md all follow.

Versioned: SCHEMA_VERSION goes up when a column is added; a column is never renamed,
retyped or removed. Files written under an older version lack the newer columns, and the
views read those as NULL (DuckDB `union_by_name`).
"""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Attribute:
    """A typed column filled from one top-level DICOM attribute."""

    column: str
    keyword: str
    kind: str  # text, texts, int, float, floats, date, time, datetime


# kind -> polars type. `texts`/`floats` hold multi-valued attributes (one list item per value).
KIND_TYPES = {
    "text": pl.String,
    "texts": pl.List(pl.String),
    "int": pl.Int64,
    "float": pl.Float64,
    "floats": pl.List(pl.Float64),
    "date": pl.Date,
    "time": pl.Time,
    "datetime": pl.Datetime("us"),
}

ATTRIBUTES = tuple(
    Attribute(column, keyword, kind)
    for column, keyword, kind in (
        ("sop_instance_uid", "SOPInstanceUID", "text"),
        ("sop_class_uid", "SOPClassUID", "text"),
        ("study_instance_uid", "StudyInstanceUID", "text"),
        ("series_instance_uid", "SeriesInstanceUID", "text"),
        ("frame_of_reference_uid", "FrameOfReferenceUID", "text"),
        ("specific_character_set", "SpecificCharacterSet", "texts"),
        ("patient_id", "PatientID", "text"),
        ("issuer_of_patient_id", "IssuerOfPatientID", "text"),
        ("patient_name", "PatientName", "text"),
        ("patient_birth_date", "PatientBirthDate", "date"),
        ("patient_sex", "PatientSex", "text"),
        ("patient_age", "PatientAge", "text"),
        ("patient_weight", "PatientWeight", "float"),
        ("patient_size", "PatientSize", "float"),
        ("study_date", "StudyDate", "date"),
        ("study_time", "StudyTime", "time"),
        ("accession_number", "AccessionNumber", "text"),
        ("study_id", "StudyID", "text"),
        ("study_description", "StudyDescription", "text"),
        ("referring_physician_name", "ReferringPhysicianName", "text"),
        ("modality", "Modality", "text"),
        ("series_number", "SeriesNumber", "int"),
        ("series_description", "SeriesDescription", "text"),
        ("series_date", "SeriesDate", "date"),
        ("series_time", "SeriesTime", "time"),
        ("body_part_examined", "BodyPartExamined", "text"),
        ("protocol_name", "ProtocolName", "text"),
        ("laterality", "Laterality", "text"),
        ("patient_position", "PatientPosition", "text"),
        ("manufacturer", "Manufacturer", "text"),
        ("manufacturer_model_name", "ManufacturerModelName", "text"),
        ("station_name", "StationName", "text"),
        ("institution_name", "InstitutionName", "text"),
        ("institutional_department_name", "InstitutionalDepartmentName", "text"),
        ("device_serial_number", "DeviceSerialNumber", "text"),
        ("software_versions", "SoftwareVersions", "texts"),
        ("instance_number", "InstanceNumber", "int"),
        ("acquisition_number", "AcquisitionNumber", "int"),
        ("acquisition_date", "AcquisitionDate", "date"),
        ("acquisition_time", "AcquisitionTime", "time"),
        ("acquisition_datetime", "AcquisitionDateTime", "datetime"),
        ("content_date", "ContentDate", "date"),
        ("content_time", "ContentTime", "time"),
        ("image_type", "ImageType", "texts"),
        ("rows", "Rows", "int"),
        ("columns", "Columns", "int"),
        ("number_of_frames", "NumberOfFrames", "int"),
        ("samples_per_pixel", "SamplesPerPixel", "int"),
        ("photometric_interpretation", "PhotometricInterpretation", "text"),
        ("bits_allocated", "BitsAllocated", "int"),
        ("bits_stored", "BitsStored", "int"),
        ("pixel_spacing", "PixelSpacing", "floats"),
        ("slice_thickness", "SliceThickness", "float"),
        ("spacing_between_slices", "SpacingBetweenSlices", "float"),
        ("image_position_patient", "ImagePositionPatient", "floats"),
        ("image_orientation_patient", "ImageOrientationPatient", "floats"),
        ("slice_location", "SliceLocation", "float"),
        ("window_center", "WindowCenter", "floats"),
        ("window_width", "WindowWidth", "floats"),
        ("rescale_intercept", "RescaleIntercept", "float"),
        ("rescale_slope", "RescaleSlope", "float"),
        ("kvp", "KVP", "float"),
        ("magnetic_field_strength", "MagneticFieldStrength", "float"),
        ("repetition_time", "RepetitionTime", "float"),
        ("echo_time", "EchoTime", "float"),
        ("contrast_bolus_agent", "ContrastBolusAgent", "text"),
        ("burned_in_annotation", "BurnedInAnnotation", "text"),
        ("lossy_image_compression", "LossyImageCompression", "text"),
    )
)

BULK_DATA = pl.List(pl.Struct({"path": pl.String, "vr": pl.String, "length": pl.Int64}))

# Columns that do not come from one attribute: derived values, the header, provenance.
OTHER_COLUMNS = {
    "study_datetime": pl.Datetime("us"),
    "transfer_syntax_uid": pl.String,
    "pixel_data_length": pl.Int64,
    "dicom_json": pl.String,
    "bulk_data": BULK_DATA,
    "file_path": pl.String,
    "file_size": pl.Int64,
    "file_mtime": pl.Datetime("us", "UTC"),
    "received_at": pl.Datetime("us", "UTC"),
    "source": pl.String,
    "calling_ae": pl.String,
    "ledger_id": pl.Int64,
    "batch_id": pl.Int64,
    "run_id": pl.String,
    "status": pl.String,
    "destinations": pl.List(pl.String),
    "warnings": pl.List(pl.String),
    "schema_version": pl.Int16,
}

INSTANCE_SCHEMA = pl.Schema(
    {**{a.column: KIND_TYPES[a.kind] for a in ATTRIBUTES}, **OTHER_COLUMNS}
)

SERIES_SCHEMA = pl.Schema(
    {
        "series_instance_uid": pl.String,
        "study_instance_uid": pl.String,
        "patient_id": pl.String,
        "modality": pl.String,
        "series_number": pl.Int64,
        "series_description": pl.String,
        "body_part_examined": pl.String,
        "institution_name": pl.String,
        "instances": pl.Int64,
        "bytes": pl.Int64,
        "first_content_date": pl.Date,
        "last_content_date": pl.Date,
        "first_received_at": pl.Datetime("us", "UTC"),
        "last_received_at": pl.Datetime("us", "UTC"),
        "schema_version": pl.Int16,
    }
)

STUDY_SCHEMA = pl.Schema(
    {
        "study_instance_uid": pl.String,
        "patient_id": pl.String,
        "patient_name": pl.String,
        "accession_number": pl.String,
        "study_date": pl.Date,
        "study_description": pl.String,
        "institution_name": pl.String,
        "modalities": pl.List(pl.String),
        "series_instance_uids": pl.List(pl.String),
        "instances": pl.Int64,
        "bytes": pl.Int64,
        "first_received_at": pl.Datetime("us", "UTC"),
        "last_received_at": pl.Datetime("us", "UTC"),
        "schema_version": pl.Int16,
    }
)

# The tables of the catalog, by folder name. `superseded` has the instances schema plus
# the batch that superseded each row.
TABLES = {
    "instances": INSTANCE_SCHEMA,
    "superseded": pl.Schema({**INSTANCE_SCHEMA, "superseded_by": pl.String}),
    "series": SERIES_SCHEMA,
    "studies": STUDY_SCHEMA,
}
REQUIRED_COLUMNS = ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "sop_class_uid", "modality")
