#compdef patientportal

_patientportal_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _PATIENTPORTAL_COMPLETE=complete_zsh patientportal)
}

compdef _patientportal_completion patientportal
