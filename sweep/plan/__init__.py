"""The plan: how a sweep of either kind is cut into groups, jobs, micro-batches,
kernel calls and tiles (``plan``, ``tiles``), and sized from memory (``memory``, ``sizing``);
``probe`` says what the statistics kernel measures."""

from sweep.plan.memory import check_disk, fitting_power_of_two, parse_memory
from sweep.plan.plan import LOCAL_AXES, Group, Job, Plan, architecture, bytes_of_result, make_plan, trained_factors
from sweep.plan.probe import Probe
from sweep.plan.tiles import Tile, assign, choose_tile_shape

__all__ = ["LOCAL_AXES", "Group", "Job", "Plan", "Probe", "Tile", "architecture", "assign", "bytes_of_result",
           "check_disk", "choose_tile_shape", "fitting_power_of_two", "make_plan", "parse_memory", "trained_factors"]
