"""What the index holds: levels, the attributes at each level, the matched values, the DDL.

The keyword sets follow the Q/R information model of PS3.4 C.6 (patient and study modules) and
the General Series / Equipment modules; any other header attribute belongs to the instance.

Every attribute of the patient, study and series sets (and a few instance keys) is also kept
in a value table of its level, one row per value in its comparison form
(:func:`pyqrscp.query.matching.index_values`), so that queries on them are narrowed by an index.
Changing which keywords have rows changes what a query may trust: it bumps `SCHEMA_VERSION`.
"""

from __future__ import annotations

from functools import lru_cache

from pydicom.datadict import dictionary_VR, tag_for_keyword

SCHEMA_VERSION = 2
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


def level_of(keyword: str) -> str:
    """The index level (``patient``/``study``/``series``/``instance``) an attribute lives at."""
    if keyword in PATIENT_KEYWORDS:
        return "patient"
    if keyword in STUDY_KEYWORDS:
        return "study"
    if keyword in SERIES_KEYWORDS:
        return "series"
    return "instance"


INSTANCE_VALUE_KEYWORDS = frozenset({"InstanceNumber", "ContentDate", "ContentTime"})
"""Instance keys with value rows: the instance level of C.6 (a query there names its series,
so other instance keys are matched among that series' instances)."""
COMPUTED_VALUE_KEYWORDS = frozenset({"ModalitiesInStudy", "SOPClassesInStudy"})
"""Study keys computed from the study's series and instances, kept as value rows at store."""
UID_COLUMNS = {"StudyInstanceUID": "study_instance_uid",
               "SeriesInstanceUID": "series_instance_uid",
               "SOPInstanceUID": "sop_instance_uid", "SOPClassUID": "sop_class_uid"}
"""Keys matched on their own column of the level's table rather than on value rows."""
COUNT_COLUMNS = {
    "NumberOfPatientRelatedStudies": "n_studies", "NumberOfPatientRelatedSeries": "n_series",
    "NumberOfPatientRelatedInstances": "n_instances", "NumberOfStudyRelatedSeries": "n_series",
    "NumberOfStudyRelatedInstances": "n_instances",
    "NumberOfSeriesRelatedInstances": "n_instances",
}
"""The Number-of-Related keys: counts kept on the entity's row by every insert and removal."""
_UNMATCHED_VRS = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"})
TABLES = {"patient": "patient", "study": "study", "series": "series", "instance": "instance"}


@lru_cache(maxsize=1024)
def value_vr(keyword: str) -> str | None:
    """The VR a keyword's value rows are made with, or ``None`` when it has none."""
    if keyword in COMPUTED_VALUE_KEYWORDS:
        return "CS" if keyword == "ModalitiesInStudy" else "UI"
    if keyword in UID_COLUMNS or (keyword not in INSTANCE_VALUE_KEYWORDS
                                  and level_of(keyword) == "instance"):
        return None
    tag = tag_for_keyword(keyword)
    vr = str(dictionary_VR(tag)) if tag is not None else ""
    return vr if vr and " or " not in vr and vr not in _UNMATCHED_VRS else None


def value_level(keyword: str) -> str:
    """The level whose value table holds a keyword's rows."""
    return "study" if keyword in COMPUTED_VALUE_KEYWORDS else level_of(keyword)


def value_tag(keyword: str) -> int:
    """The ``tag`` column of a keyword's value rows: its DICOM tag as an integer."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return int(tag)


# The DDL as single statements; ``{pk}`` and ``{text}`` are the dialect's integer primary key
# and its byte-ordered text type (see dialect.py).
_VALUE_TABLE = (
    "CREATE TABLE IF NOT EXISTS {level}_value (tag INTEGER NOT NULL, value {text} NOT NULL, "
    "owner BIGINT NOT NULL REFERENCES {level}(pk) ON DELETE CASCADE, "
    "PRIMARY KEY (tag, value, owner))",
    "CREATE INDEX IF NOT EXISTS {level}_value_owner ON {level}_value(owner, tag, value)",
)
VALUE_TABLES_DDL = tuple(statement.replace("{level}", level)
                         for level in TABLES for statement in _VALUE_TABLE)
DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS patient (pk {pk}, patient_id {text} NOT NULL UNIQUE, "
    "attrs TEXT NOT NULL, n_studies INTEGER NOT NULL DEFAULT 0, "
    "n_series INTEGER NOT NULL DEFAULT 0, n_instances INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS study (pk {pk}, patient_pk BIGINT NOT NULL REFERENCES "
    "patient(pk), study_instance_uid {text} NOT NULL UNIQUE, study_date TEXT NOT NULL "
    "DEFAULT '', attrs TEXT NOT NULL, last_stored BIGINT NOT NULL, "
    "n_series INTEGER NOT NULL DEFAULT 0, n_instances INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS study_patient ON study(patient_pk)",
    "CREATE INDEX IF NOT EXISTS study_last_stored ON study(last_stored)",
    "CREATE TABLE IF NOT EXISTS series (pk {pk}, study_pk BIGINT NOT NULL REFERENCES "
    "study(pk), series_instance_uid {text} NOT NULL UNIQUE, modality TEXT NOT NULL DEFAULT '', "
    "attrs TEXT NOT NULL, n_instances INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS series_study ON series(study_pk)",
    "CREATE TABLE IF NOT EXISTS instance (pk {pk}, series_pk BIGINT NOT NULL REFERENCES "
    "series(pk), sop_instance_uid {text} NOT NULL UNIQUE, sop_class_uid TEXT NOT NULL, "
    "transfer_syntax_uid TEXT NOT NULL, file_name TEXT NOT NULL UNIQUE, "
    "file_size BIGINT NOT NULL, received BIGINT NOT NULL, attrs TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS instance_series ON instance(series_pk, received)",
    *VALUE_TABLES_DDL,
)
META_DDL = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
MIGRATE_1_TO_2: tuple[str, ...] = (
    *(f"ALTER TABLE patient ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
      for column in ("n_studies", "n_series", "n_instances")),
    *(f"ALTER TABLE study ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
      for column in ("n_series", "n_instances")),
    "ALTER TABLE series ADD COLUMN n_instances INTEGER NOT NULL DEFAULT 0",
    *VALUE_TABLES_DDL,
    "UPDATE series SET n_instances = (SELECT COUNT(*) FROM instance i "
    "WHERE i.series_pk = series.pk)",
    "UPDATE study SET n_series = (SELECT COUNT(*) FROM series r WHERE r.study_pk = study.pk), "
    "n_instances = (SELECT COALESCE(SUM(r.n_instances), 0) FROM series r "
    "WHERE r.study_pk = study.pk)",
    "UPDATE patient SET n_studies = (SELECT COUNT(*) FROM study s "
    "WHERE s.patient_pk = patient.pk), n_series = (SELECT COALESCE(SUM(s.n_series), 0) "
    "FROM study s WHERE s.patient_pk = patient.pk), n_instances = (SELECT "
    "COALESCE(SUM(s.n_instances), 0) FROM study s WHERE s.patient_pk = patient.pk)",
)
"""Schema 1 (no counts, no value tables) to 2; the value rows are then filled from attrs."""
