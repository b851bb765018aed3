package coord

import "sort"

func sortKeys(keys [][]byte, before func(a, b []byte) bool) {
	sort.Slice(keys, func(i, j int) bool { return before(keys[i], keys[j]) })
}
