"""localsoc.serving"""
