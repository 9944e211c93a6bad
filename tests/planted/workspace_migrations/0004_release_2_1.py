from importlib import import_module

Migration = import_module("tenantry.workspace.migrations.0004_release_2_1").Migration
