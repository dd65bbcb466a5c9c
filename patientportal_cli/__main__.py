from patientportal_cli.cli.app import main

main()
