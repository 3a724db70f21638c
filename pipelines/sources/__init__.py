"""Where rows and bytes come from: CSV layouts, tar shards, local files, gs:// and HTTP(S), read with bounds."""
