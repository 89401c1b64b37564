package catalog

import (
	"context"
	"fmt"
)

// EntriesAfter returns up to limit current entries whose object id is
// greater than after (nil or empty: from the first), in object id order.
// The store name of an object is the lowercase hex of its id, so this is
// also the lexical order of store names, the order in which stores list:
// verify walks both side by side with bounded memory. It reads through the
// unique index on object_id and holds no database resources after it
// returns.
func (c *sqlCatalog) EntriesAfter(ctx context.Context, after []byte, limit int) ([]Entry, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("catalog: entries after: limit %d", limit)
	}
	if after == nil {
		after = []byte{} // a BLOB below every 16-byte id (NULL would match nothing)
	}
	rows, err := c.query(ctx, `SELECT `+entryCols+` FROM objects
		WHERE object_id > ? ORDER BY object_id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("catalog: entries after %x: %w", after, err)
	}
	defer rows.Close()
	es := make([]Entry, 0, min(limit, pageSize))
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("catalog: entries after %x: %w", after, err)
		}
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: entries after %x: %w", after, err)
	}
	return es, nil
}
