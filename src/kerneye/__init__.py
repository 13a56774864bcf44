"""kerneye: an eye on the kernel. eBPF security observability and enforcement."""
__version__ = "0.1.0"
