from fspo_bench.cli import main

main()
