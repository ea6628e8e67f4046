# The plots of bench/RESULTS.md, from the tables dmaq-bench --plot-data
# writes:  gnuplot -e "dir='bench/results'" bench/plot.gp
if (!exists("dir")) dir = "bench/results"
set terminal pngcairo size 1200,650 noenhanced font ",10"
set datafile missing "NaN"
set key outside right top

set output dir."/latency.png"
set title "One-way latency, 64 B messages, 1 publisher x 1 subscriber (lower is better)"
set ylabel "ns (log scale)"
set logscale y
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -30 left
set grid ytics
plot for [col=2:5] dir."/latency.dat" using col:xtic(1) title columnheader(col)

unset style
set output dir."/throughput.png"
set title "Throughput against message size, 1 publisher x 1 subscriber (higher is better)"
set xlabel "message size, bytes (log scale)"
set ylabel "GB/s (log scale)"
set logscale xy
set xtics norotate auto
set style data linespoints
stats dir."/throughput.dat" skip 1 nooutput
plot for [col=2:STATS_columns] dir."/throughput.dat" using 1:col title columnheader(col) lw 2
