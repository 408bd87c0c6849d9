from oxcore.cli import main

main(prog_name="oxcore")
