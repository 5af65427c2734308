from django.urls import path

from examples.django_project import views

urlpatterns = [
    path("", views.index),
    path("stream", views.stream),
    path("checksum", views.checksum),
]
