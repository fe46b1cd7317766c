"""The plugin's datastore tables (no alembic migration creates a plugin's tables: the
service creates them with ``CREATE TABLE IF NOT EXISTS`` at setup)."""

import middlewared.sqlalchemy as sa  # noqa: I001 - middlewared's own import spelling
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable


class VMwareCoordPolicyModel(sa.Model):
    __tablename__ = "vmware_coord_policy"

    id = sa.Column(sa.Integer(), primary_key=True)
    name = sa.Column(sa.String(64), unique=True)
    priority = sa.Column(sa.Integer(), unique=True)
    document = sa.Column(sa.JSON(), default=dict)


class VMwareCoordConfigModel(sa.Model):
    __tablename__ = "vmware_coord_config"

    id = sa.Column(sa.Integer(), primary_key=True)
    document = sa.Column(sa.JSON(), default=dict)


class VMwareCoordEndpointModel(sa.Model):
    __tablename__ = "vmware_coord_endpoint"

    id = sa.Column(sa.Integer(), primary_key=True)
    hostname = sa.Column(sa.String(253), unique=True)
    document = sa.Column(sa.JSON(), default=dict)


TABLES = (VMwareCoordPolicyModel, VMwareCoordConfigModel, VMwareCoordEndpointModel)


def table_ddl() -> list[str]:
    """CREATE TABLE IF NOT EXISTS for each table: no migration creates a plugin's tables."""
    return [str(CreateTable(m.__table__, if_not_exists=True).compile(dialect=sqlite.dialect()))
            for m in TABLES]
