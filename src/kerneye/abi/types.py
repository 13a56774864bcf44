"""Public face of the generated ABI mirror: `from kerneye.abi.types import MsgExec`."""
from ._generated import *  # noqa: F401,F403
