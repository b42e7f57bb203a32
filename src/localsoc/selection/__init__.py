"""localsoc.selection"""
