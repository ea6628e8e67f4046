# The plots of bench/RESULTS.md, from the tables dmaq-bench --plot-data
# writes:  gnuplot -e "dir='bench/results'" bench/plot.gp
if (!exists("dir")) dir = "bench/results"
set terminal pngcairo size 1200,650 noenhanced font ",10"
set datafile missing "NaN"
set key outside right top
# Fourteen distinguishable colours (gnuplot's default cycle has eight).
colours = "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf #000000 #ff1493 #00ced1 #8b4513"
do for [i=1:14] { set linetype i lc rgb word(colours, i) pt i }

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
set xrange [5:1700000]
set xtics norotate ("8 B" 8, "64 B" 64, "1 KiB" 1024, "64 KiB" 65536, "1 MiB" 1048576)
set style data linespoints
stats dir."/throughput.dat" skip 1 nooutput
# dmaq's eight series (columns 2-9) solid, the alternatives dashed.
plot for [col=2:9] dir."/throughput.dat" using 1:col title columnheader(col) lw 2 lt (col - 1), \
     for [col=10:STATS_columns] dir."/throughput.dat" using 1:col title columnheader(col) lw 2 lt (col - 1) dt 2
