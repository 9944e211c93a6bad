from importlib import import_module

Migration = import_module("tenantry.workspace.migrations.0001_initial").Migration
