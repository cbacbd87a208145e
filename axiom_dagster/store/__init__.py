"""State store: SQLAlchemy tables, Alembic migrations, ledger/batch/study/delivery records, API keys.
Imports config and dicom only.
"""
