"""Who is in the directory and what the site chose: users, groups, the administrator's
settings and API tokens. A floor below sign-in (which reads them to decide a step)
and above factors (users' passwords); it never calls sign-in, sessions or the web."""
