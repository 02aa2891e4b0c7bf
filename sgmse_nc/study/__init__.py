"""The study in miniature, one command (sgmse-study, python -m sgmse_nc.study): noise classes split into
training and unseen, test sets with honest references (in distribution, unseen noise, non-stationary), the
chosen rows of the experiment matrix trained over seeds at a named scale, the run-level report at w in
{0, 1, 3}, and paired differences with 95% intervals (sgmse_nc.eval.paired). It runs the other commands
(prepare, train, report) as they run from a shell, so every step resumes where it stopped."""
