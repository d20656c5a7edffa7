"""Tools: AnnData in, results computed and written back."""

__all__: list[str] = []
