// Writes an HdrHistogram interval log of microseconds the way Java applications do: with
// HistogramLogWriter, outputValueUnitRatio 1000 (the Interval_Max column in milliseconds),
// and no #[MaxValueDivisor] header (HistogramLogWriter never writes one).
//
// Run (Java 11 or later runs a source file directly):
//   java -cp /usr/share/java/hdrhistogram.jar WriteMicros.java OUT.hlog
// java-micros.hlog beside this file was written by it (hdrhistogram 2.1.11), for the tests
// that run without java.
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramLogWriter;

public class WriteMicros {
    public static void main(String[] args) throws Exception {
        HistogramLogWriter writer = new HistogramLogWriter(args[0]);
        writer.outputLogFormatVersion();
        long start = 1700000000000L;
        writer.outputStartTime(start);
        writer.setBaseTime(start);
        writer.outputLegend();
        // Three one-second intervals of 1000 end-of-data latencies each: 10 µs to 10 ms.
        for (int i = 0; i < 3; i++) {
            Histogram h = new Histogram(3);
            for (int v = 1; v <= 1000; v++) {
                h.recordValue(v * 10 + i);
            }
            h.setTag("eod");
            writer.outputIntervalHistogram(i, i + 1, h, 1000.0);
        }
        writer.close();
    }
}
