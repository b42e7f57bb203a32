from .pipeline import create_library_pipeline, create_pipeline, create_sites_pipeline

__all__ = ["create_library_pipeline", "create_pipeline", "create_sites_pipeline"]
