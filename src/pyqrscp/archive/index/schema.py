"""What the index holds: levels, the attributes at each level, and the SQLite DDL.

The keyword sets follow the Q/R information model of PS3.4 C.6 (patient and study modules) and
the General Series / Equipment modules; any other header attribute belongs to the instance.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
INDEX_FILE_NAME = "pyqrscp-index.sqlite3"

PATIENT_KEYWORDS = frozenset({
    "PatientName", "PatientID", "IssuerOfPatientID", "TypeOfPatientID", "PatientBirthDate",
    "PatientBirthTime", "PatientSex", "OtherPatientIDs", "OtherPatientNames", "EthnicGroup",
    "PatientComments", "PatientSpeciesDescription", "PatientBreedDescription",
    "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization",
    "PatientIdentityRemoved", "DeidentificationMethod", "PatientBirthName",
    "PatientMotherBirthName", "QualityControlSubject",
})
STUDY_KEYWORDS = frozenset({
    "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyInstanceUID",
    "ReferringPhysicianName", "StudyDescription", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "AdmittingDiagnosesDescription", "PatientAge",
    "PatientSize", "PatientWeight", "Occupation", "AdditionalPatientHistory", "OtherStudyNumbers",
    "MedicalAlerts", "Allergies", "SmokingStatus", "PregnancyStatus", "PatientState",
    "ReasonForStudy", "RequestingPhysician", "RequestedProcedureDescription",
    "StudyComments", "InterpretationAuthor",
})
SERIES_KEYWORDS = frozenset({
    "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "SeriesDate",
    "SeriesTime", "Laterality", "BodyPartExamined", "ProtocolName", "PerformingPhysicianName",
    "OperatorsName", "PatientPosition", "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "Manufacturer", "InstitutionName",
    "InstitutionAddress", "StationName", "InstitutionalDepartmentName", "ManufacturerModelName",
    "DeviceSerialNumber", "SoftwareVersions", "FrameOfReferenceUID",
    "PositionReferenceIndicator", "SeriesType", "Units",
})
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def level_of(keyword: str) -> str:
    """The index level (``patient``/``study``/``series``/``instance``) an attribute lives at."""
    if keyword in PATIENT_KEYWORDS:
        return "patient"
    if keyword in STUDY_KEYWORDS:
        return "study"
    if keyword in SERIES_KEYWORDS:
        return "series"
    return "instance"


DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patient (
    pk INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL UNIQUE,
    attrs TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS study (
    pk INTEGER PRIMARY KEY,
    patient_pk INTEGER NOT NULL REFERENCES patient(pk),
    study_instance_uid TEXT NOT NULL UNIQUE,
    study_date TEXT NOT NULL DEFAULT '',
    attrs TEXT NOT NULL,
    last_stored INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS study_patient ON study(patient_pk);
CREATE INDEX IF NOT EXISTS study_last_stored ON study(last_stored);
CREATE TABLE IF NOT EXISTS series (
    pk INTEGER PRIMARY KEY,
    study_pk INTEGER NOT NULL REFERENCES study(pk),
    series_instance_uid TEXT NOT NULL UNIQUE,
    modality TEXT NOT NULL DEFAULT '',
    attrs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_pk);
CREATE TABLE IF NOT EXISTS instance (
    pk INTEGER PRIMARY KEY,
    series_pk INTEGER NOT NULL REFERENCES series(pk),
    sop_instance_uid TEXT NOT NULL UNIQUE,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    file_name TEXT NOT NULL UNIQUE,
    file_size INTEGER NOT NULL,
    received INTEGER NOT NULL,
    attrs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instance_series ON instance(series_pk, received);
"""
