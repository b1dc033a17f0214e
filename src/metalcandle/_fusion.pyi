"""Type stubs for metalcandle._fusion."""
enabled: bool

def set_fusion(flag: bool) -> None: ...
