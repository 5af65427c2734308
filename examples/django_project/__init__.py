"""A minimal Django project served by h2serve: `h2serve examples.django_project.wsgi:application`."""
