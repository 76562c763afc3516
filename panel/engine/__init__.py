"""The ingest engine: reads the agents' sample streams from Redis into PostgreSQL."""

from panel.engine.consumer import Engine, EngineUnavailable

__all__ = ["Engine", "EngineUnavailable"]
