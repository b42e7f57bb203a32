"""localsoc.models"""
