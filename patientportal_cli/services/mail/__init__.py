"""Patient mail: intents queued in the change's transaction (outbox), the Danish texts
(texts), and delivery after the commit (delivery). `cli/mail.py` is the command group."""
