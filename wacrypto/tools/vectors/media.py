from typing import Any, Callable
LOCAL_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {}
