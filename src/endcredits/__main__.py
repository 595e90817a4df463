from endcredits.cli import main

main()
