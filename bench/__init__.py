"""Side-by-side benchmarks of pixbot against nanobot; run with ``python bench/run.py`` (never by pytest)."""

__all__: list[str] = []
