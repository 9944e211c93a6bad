from importlib import import_module

Migration = import_module("tenantry.workspace.migrations.0003_release_2_0").Migration
