from crossalign.cli import main

main()
