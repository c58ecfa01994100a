"""Ready-made worker base classes: periodic jobs, queue consumers, pipelines, health monitoring.

This package is being built; see the Changelog for what has landed.
"""

__all__: list[str] = []
