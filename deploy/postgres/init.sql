-- Two databases on one server: Dagster's storage and Axiom's state store (their Alembic
-- version tables would collide in one database).
CREATE DATABASE dagster OWNER axiom;
