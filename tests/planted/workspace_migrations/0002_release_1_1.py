from importlib import import_module

Migration = import_module("tenantry.workspace.migrations.0002_release_1_1").Migration
