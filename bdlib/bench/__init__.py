"""The toy editing benchmark: tasks judged by the oracle (``evaluation``) and the settings it compares (``rows``)."""
