"""The plugin's datastore tables (no alembic migration creates a plugin's tables: the
service creates them with ``CREATE TABLE IF NOT EXISTS`` at setup).

``sa.JSON(dict)``: the type argument is required from 26.0 on (truenas/middleware
TS-26.0.0-BETA.3 ``sqlalchemy.py:76``) and accepted by 25.10 (``sqlalchemy.py:69``)."""

import middlewared.sqlalchemy as sa  # noqa: I001 - middlewared's own import spelling
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable


class VMwareCoordPolicyModel(sa.Model):
    __tablename__ = "vmware_coord_policy"

    id = sa.Column(sa.Integer(), primary_key=True)
    name = sa.Column(sa.String(64), unique=True)
    priority = sa.Column(sa.Integer(), unique=True)
    document = sa.Column(sa.JSON(dict), default=dict)


class VMwareCoordConfigModel(sa.Model):
    __tablename__ = "vmware_coord_config"

    id = sa.Column(sa.Integer(), primary_key=True)
    document = sa.Column(sa.JSON(dict), default=dict)


class VMwareCoordEndpointModel(sa.Model):
    __tablename__ = "vmware_coord_endpoint"

    id = sa.Column(sa.Integer(), primary_key=True)
    hostname = sa.Column(sa.String(253), unique=True)
    document = sa.Column(sa.JSON(dict), default=dict)


class VMwareCoordStateModel(sa.Model):
    """The plugin's own facts, by key: e.g. ``trust_baseline``, the VMware-Snapshots hosts
    that existed when the plugin was first set up (trusted on first use)."""

    __tablename__ = "vmware_coord_state"

    id = sa.Column(sa.Integer(), primary_key=True)
    key = sa.Column(sa.String(64), unique=True)
    value = sa.Column(sa.JSON(dict), default=dict)


TABLES = (VMwareCoordPolicyModel, VMwareCoordConfigModel, VMwareCoordEndpointModel, VMwareCoordStateModel)


def table_ddl() -> list[str]:
    """CREATE TABLE IF NOT EXISTS for each table: no migration creates a plugin's tables."""
    return [str(CreateTable(m.__table__, if_not_exists=True).compile(dialect=sqlite.dialect()))
            for m in TABLES]
