package hlc_test

import (
	"fmt"
	"time"

	"github.com/veltrixdb/veltrix/pkg/hlc"
)

func Example() {
	// A fixed physical clock, so the output is stable.
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	c := hlc.New(hlc.WithPhysicalClock(func() time.Time { return now }))

	a, b := c.Now(), c.Now()
	fmt.Println(hlc.String(a))
	fmt.Println(hlc.String(b), b > a)

	// A version observed from another router, 100ms ahead, pushes the clock.
	if err := c.Update(hlc.FromTime(now.Add(100*time.Millisecond), 3)); err != nil {
		fmt.Println(err)
	}
	fmt.Println(hlc.String(c.Now()))

	// One a minute ahead is refused.
	err := c.Update(hlc.FromTime(now.Add(time.Minute), 0))
	fmt.Println(err != nil)
	// Output:
	// 2024-05-01T12:00:00.000000Z,0
	// 2024-05-01T12:00:00.000000Z,1 true
	// 2024-05-01T12:00:00.100000Z,4
	// true
}

func ExampleFromMicros() {
	// A DynamoDB stream record's write time, in microseconds.
	const writeTimestampMicros = 1714564800123456
	v := hlc.FromMicros(writeTimestampMicros, 0)
	fmt.Println(hlc.String(v), hlc.Micros(v) == writeTimestampMicros)
	// Output: 2024-05-01T12:00:00.123456Z,0 true
}
