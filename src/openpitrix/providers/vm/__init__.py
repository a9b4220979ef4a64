"""VM app packages in OpenPitrix's format: package.json, config.json and cluster.json.tmpl."""
