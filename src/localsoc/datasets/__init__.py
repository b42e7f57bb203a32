"""localsoc.datasets"""
