"""A proxy-wasm (ABI 0.2.1) host for tests, with Envoy and Kong
(ngx_wasm_module) profiles. See README.md."""

from .dispatch import Call, Reply
from .host import ConfigRejected, Host, ProfileViolation, VmTrapped, wasm_dir
from .profiles import HostTrap

__all__ = ["Call", "ConfigRejected", "Host", "HostTrap", "ProfileViolation", "Reply",
           "VmTrapped", "wasm_dir"]
