"""localsoc.pipelines"""
