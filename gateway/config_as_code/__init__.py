"""Config as code: cost centers, users, providers, routes and prices from one YAML file.

read and validate (`parse`, against the pydantic models in `schema`) → compare with the
database (`plan`) → write the difference in one transaction (`apply`).
`manage.py apply_config FILE` is the thin command in front of it.
"""

from gateway.config_as_code.apply import config_apply, config_apply_file
from gateway.config_as_code.parse import ConfigError, Problem, config_load, config_parse
from gateway.config_as_code.plan import PLAN_SECTIONS, Action, Change, ConfigPlan, config_plan
from gateway.config_as_code.schema import GatehouseConfig

__all__ = [
    "PLAN_SECTIONS",
    "Action",
    "Change",
    "ConfigError",
    "ConfigPlan",
    "GatehouseConfig",
    "Problem",
    "config_apply",
    "config_apply_file",
    "config_load",
    "config_parse",
    "config_plan",
]
