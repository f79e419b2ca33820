"""Rewrites res2net/models/counts.json, the parameter and FLOP counts shipped with the
package, by counting every registered network on the meta device (run after adding a model;
tests/test_cli.py recounts and compares)."""

from res2net.models.counting import SHIPPED_FILE, write_shipped_counts
from res2net.models.registry import get_entry, list_models

if __name__ == "__main__":
    write_shipped_counts(get_entry(name).config for name in list_models())
    print(f"wrote {SHIPPED_FILE}")
